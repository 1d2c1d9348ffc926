//! The XML tokenizer behind [`crate::xml_to_json`]: one pass over text
//! already known to be UTF-8, handing out slices of it.
//!
//! It stands in for quick-xml's `Reader`, whose event loop alone took about
//! as long as the whole conversion may: it validated UTF-8 again for every
//! event, read each tag twice (once for its end, once for its attributes) and
//! split text at every reference. This reads every byte once and accepts the
//! documents that reader accepted, set up as the converter had it (end names
//! checked, nothing trimmed). quick-xml still does the rare parts, and their
//! errors read as before: skipping a DOCTYPE (never processed), reading the
//! XML declaration's encoding, character references and the error messages.
//!
//! Malformed documents are refused as before, though not always with the
//! same error when there are several (a name is checked before the end of
//! its tag is found, say). One such document is refused that was not: an
//! attribute name with a quote in it, which only a namespace declaration
//! dropped by `namespaces = "strip"` could have got through.

use crate::error::ConvertError;
use crate::swar;
use quick_xml::errors::{Error, IllFormedError, SyntaxError};
use quick_xml::escape::{EscapeError, resolve_xml_entity};
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesRef, Event};

/// What [`Reader::next`] found. Comments and processing instructions are
/// skipped. What a token holds is then read from the reader (see
/// [`Reader::text`]), so that no token is moved around: the compiler copies
/// such small enums clumsily, and this loop runs for every token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// Character data up to the next markup: [`Reader::text`].
    Text,
    /// `<name`: [`Reader::name`]. The tag's attributes are read next, with
    /// [`Reader::tag_end`] and [`Reader::attribute`].
    Start,
    /// `</`: the name is read next, with [`Reader::end_tag`].
    End,
    /// A CDATA section: [`Reader::content`].
    CData,
    /// An XML declaration, whose content (`xml version="1.0" ...`) is
    /// [`Reader::content`].
    Decl,
    /// A DOCTYPE, skipped whole, internal subset included.
    Doctype,
    /// The end of the document.
    Eof,
}

/// Text or an attribute value as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a> {
    pub text: &'a str,
    /// No reference to resolve and no line end or tab to normalise: the
    /// text is its own value. Noted while scanning, so plain text (nearly
    /// all of it) is never looked at twice.
    pub plain: bool,
}

/// An element or attribute name as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a> {
    pub text: &'a str,
    /// Known to be an XML `Name`: ASCII name characters after a name start,
    /// found while scanning (so most names are never looked at twice). The
    /// others are for the caller to check.
    pub valid: bool,
}

/// Scans a document.
#[derive(Debug)]
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
    /// What the last token holds, or the last attribute's name...
    span: (usize, usize),
    /// ...and that attribute's value.
    value: (usize, usize),
    /// The last text or attribute value is plain (see [`Raw::plain`]).
    plain: bool,
    /// The last name is valid (see [`Name::valid`]).
    valid: bool,
}

/// How the scanning loops treat a byte: bit flags, one table for all of them.
const TEXT_END: u8 = 1;
const TEXT_SPECIAL: u8 = 2;
const VALUE_SPECIAL: u8 = 4;
const QUOTE: u8 = 8;
const ELEMENT_NAME_END: u8 = 16;
const ATTRIBUTE_NAME_END: u8 = 32;
/// ASCII that may start a name...
const NAME_START: u8 = 64;
/// ...and continue one.
const NAME_CHAR: u8 = 128;

const CLASS: [u8; 256] = {
    let mut class = [0; 256];
    class[b'<' as usize] = TEXT_END;
    class[b'&' as usize] = TEXT_SPECIAL | VALUE_SPECIAL;
    class[b'\r' as usize] = TEXT_SPECIAL | VALUE_SPECIAL;
    class[b'\n' as usize] = VALUE_SPECIAL;
    class[b'\t' as usize] = VALUE_SPECIAL;
    // `/` ends a name only before `>`, which `Reader::name_ends` checks.
    let ends = [b' ', b'\t', b'\r', b'\n', b'>', b'"', b'\''];
    let mut i = 0;
    while i < ends.len() {
        class[ends[i] as usize] |= ELEMENT_NAME_END | ATTRIBUTE_NAME_END;
        i += 1;
    }
    class[b'"' as usize] |= QUOTE;
    class[b'\'' as usize] |= QUOTE;
    class[b'=' as usize] |= ATTRIBUTE_NAME_END;
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            class[b] |= NAME_START | NAME_CHAR;
        } else if c.is_ascii_digit() || c == b'-' || c == b'.' {
            class[b] |= NAME_CHAR;
        }
        b += 1;
    }
    class
};

/// XML's whitespace.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// A quick-xml error as the converter reports it.
pub fn xml_error(at: usize, error: impl Into<Error>) -> ConvertError {
    match error.into() {
        Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
            ConvertError::UnknownEntity(name)
        }
        other => ConvertError::Xml {
            at: at as u64,
            reason: other.to_string(),
        },
    }
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Reader {
            text,
            pos: 0,
            span: (0, 0),
            value: (0, 0),
            plain: true,
            valid: false,
        }
    }

    /// After [`Token::Text`]: the text.
    #[inline(always)]
    pub fn text(&self) -> Raw<'a> {
        Raw {
            text: self.content(),
            plain: self.plain,
        }
    }

    /// After [`Token::Start`]: the element's name; after
    /// [`Self::attribute`]: the attribute's.
    #[inline(always)]
    pub fn name(&self) -> Name<'a> {
        Name {
            text: self.content(),
            valid: self.valid,
        }
    }

    /// After [`Self::attribute`]: its value.
    #[inline(always)]
    pub fn value(&self) -> Raw<'a> {
        Raw {
            text: &self.text[self.value.0..self.value.1],
            plain: self.plain,
        }
    }

    /// After [`Token::CData`] or [`Token::Decl`]: the content.
    #[inline(always)]
    pub fn content(&self) -> &'a str {
        &self.text[self.span.0..self.span.1]
    }

    /// The byte offset reached.
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    fn byte(&self, at: usize) -> Option<u8> {
        self.text.as_bytes().get(at).copied()
    }

    /// Whether a name ends at `at`: at a byte of class `end` (whitespace, `>`
    /// and the like), or at the `/` of `/>`.
    #[inline(always)]
    fn name_ends(&self, at: usize, end: u8) -> bool {
        match self.byte(at) {
            Some(b'/') => self.byte(at + 1) == Some(b'>'),
            Some(b) => CLASS[b as usize] & end != 0,
            None => true,
        }
    }

    /// Reads a name, up to where [`Self::name_ends`], into `span` and
    /// `valid`.
    #[inline(always)]
    fn scan_name(&mut self, end: u8) {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut i = start;
        loop {
            let Some(word) = swar::word_at(bytes, i) else {
                // The document's last few bytes, one by one.
                while i < bytes.len() && CLASS[bytes[i] as usize] & NAME_CHAR != 0 {
                    i += 1;
                }
                break;
            };
            let stop = swar::not_name(word);
            if stop != 0 {
                i += swar::first(stop);
                break;
            }
            i += 8;
        }
        let valid = bytes
            .get(start)
            .is_some_and(|&b| CLASS[b as usize] & NAME_START != 0)
            && self.name_ends(i, end);
        if !valid {
            // Not ASCII, or not a name: taken as far as quick-xml took it,
            // for the caller to check.
            while !self.name_ends(i, end) {
                i += 1;
            }
        }
        self.pos = i;
        self.span = (start, i);
        self.valid = valid;
    }

    #[inline(always)]
    fn skip_space(&mut self) {
        while self.byte(self.pos).is_some_and(is_space) {
            self.pos += 1;
        }
    }

    /// The next token.
    #[inline(always)]
    pub fn next(&mut self) -> Result<Token, ConvertError> {
        loop {
            let start = self.pos;
            match self.byte(start) {
                None => return Ok(Token::Eof),
                Some(b'<') => {}
                Some(_) => {
                    self.scan_text();
                    return Ok(Token::Text);
                }
            }
            let token = match self.byte(start + 1) {
                Some(b'/') => {
                    self.pos += 2;
                    Some(Token::End)
                }
                Some(b'!') => self.bang()?,
                Some(b'?') => self.processing_instruction()?,
                Some(_) => {
                    self.pos += 1;
                    self.scan_name(ELEMENT_NAME_END);
                    Some(Token::Start)
                }
                None => return Err(xml_error(start, SyntaxError::UnclosedTag)),
            };
            if let Some(token) = token {
                return Ok(token);
            }
        }
    }

    /// Reads character data, up to the next `<` or the end, into `span` and
    /// `plain`.
    #[inline(always)]
    fn scan_text(&mut self) {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut plain = true;
        let mut i = start;
        loop {
            let Some(word) = swar::word_at(bytes, i) else {
                // The document's last few bytes, one by one.
                while i < bytes.len() {
                    let class = CLASS[bytes[i] as usize];
                    if class & TEXT_END != 0 {
                        break;
                    }
                    plain &= class & TEXT_SPECIAL == 0;
                    i += 1;
                }
                break;
            };
            let special =
                swar::equal(word, b'<') | swar::equal(word, b'&') | swar::equal(word, b'\r');
            if special == 0 {
                i += 8;
                continue;
            }
            i += swar::first(special);
            if bytes[i] == b'<' {
                break;
            }
            plain = false;
            i += 1;
        }
        self.pos = i;
        self.span = (start, i);
        self.plain = plain;
    }

    /// After a start tag's name or an attribute: whether the tag ends here,
    /// and if so whether it was empty (`/>`).
    #[inline(always)]
    pub fn tag_end(&mut self) -> Result<Option<bool>, ConvertError> {
        self.skip_space();
        match self.byte(self.pos) {
            Some(b'>') => {
                self.pos += 1;
                Ok(Some(false))
            }
            Some(b'/') if self.byte(self.pos + 1) == Some(b'>') => {
                self.pos += 2;
                Ok(Some(true))
            }
            Some(_) => Ok(None),
            None => Err(xml_error(self.pos, SyntaxError::UnclosedTag)),
        }
    }

    /// Reads the attribute that [`Self::tag_end`] found instead of the tag's
    /// end: then [`Self::name`] and [`Self::value`]. As in quick-xml, the
    /// name runs to `=` or whitespace, and nothing needs to separate one
    /// attribute from the next.
    #[inline(always)]
    pub fn attribute(&mut self) -> Result<(), ConvertError> {
        self.scan_name(ATTRIBUTE_NAME_END);
        self.skip_space();
        if self.byte(self.pos) != Some(b'=') {
            return Err(xml_error(self.pos, AttrError::ExpectedEq(self.pos)));
        }
        self.pos += 1;
        self.skip_space();
        let quote = match self.byte(self.pos) {
            Some(quote @ (b'"' | b'\'')) => quote,
            Some(_) => return Err(xml_error(self.pos, AttrError::UnquotedValue(self.pos))),
            None => return Err(xml_error(self.pos, AttrError::ExpectedValue(self.pos))),
        };
        self.pos += 1;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut plain = true;
        let mut i = start;
        while let Some(word) = swar::word_at(bytes, i) {
            // The quote, or a byte that may need normalising: `&` or a
            // control character (tab, line ends; others are kept as they are).
            let found = swar::equal(word, quote) | swar::equal(word, b'&') | swar::control(word);
            if found == 0 {
                i += 8;
                continue;
            }
            i += swar::first(found);
            if bytes[i] == quote {
                break;
            }
            plain = false;
            i += 1;
        }
        loop {
            let Some(&b) = bytes.get(i) else {
                let error = if quote == b'"' {
                    SyntaxError::UnclosedDoubleQuotedAttributeValue
                } else {
                    SyntaxError::UnclosedSingleQuotedAttributeValue
                };
                return Err(xml_error(start, error));
            };
            let class = CLASS[b as usize];
            if class & QUOTE != 0 && b == quote {
                break;
            }
            plain &= class & VALUE_SPECIAL == 0;
            i += 1;
        }
        self.pos = i + 1;
        self.value = (start, i);
        self.plain = plain;
        Ok(())
    }

    /// Right after a start tag named `qname`: when the element is only plain
    /// text (no reference, no carriage return, no markup) and its end tag,
    /// `</qname>`, reads both and returns the text. Otherwise reads nothing.
    /// Most elements of data documents are such leaves.
    #[inline(always)]
    pub fn leaf_text(&mut self, qname: &str) -> Option<&'a str> {
        let start = self.pos;
        self.scan_text();
        let end = self.pos;
        let bytes = self.text.as_bytes();
        let close = end + 2 + qname.len();
        let leaf = self.plain
            && bytes.get(end + 1) == Some(&b'/')
            && bytes.get(close) == Some(&b'>')
            && bytes
                .get(end + 2..close)
                .is_some_and(|name| swar::same(name, qname.as_bytes()));
        if !leaf {
            self.pos = start;
            return None;
        }
        self.pos = close + 1;
        Some(&self.text[start..end])
    }

    /// After `</`: the name the end tag closes, without the whitespace
    /// allowed after it. `expected`, the open element's name, is what it
    /// nearly always is.
    pub fn end_tag(&mut self, expected: &str) -> Result<&'a str, ConvertError> {
        let rest = &self.text[self.pos..];
        let bytes = rest.as_bytes();
        if bytes.get(expected.len()) == Some(&b'>')
            && swar::same(&bytes[..expected.len()], expected.as_bytes())
        {
            self.pos += expected.len() + 1;
            return Ok(&rest[..expected.len()]);
        }
        // Up to the first `>` outside quotes, as quick-xml reads end tags (so
        // `</a x=">">` is one tag, and a mismatch).
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut i = start;
        loop {
            match bytes.get(i) {
                None => return Err(xml_error(start - 2, SyntaxError::UnclosedTag)),
                Some(b'>') => break,
                Some(&quote @ (b'"' | b'\'')) => {
                    let Some(len) = bytes[i + 1..].iter().position(|&b| b == quote) else {
                        return Err(xml_error(start - 2, SyntaxError::UnclosedTag));
                    };
                    i += len + 2;
                }
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        Ok(self.text[start..i].trim_end_matches([' ', '\t', '\r', '\n']))
    }

    /// At `<!`: skips a comment (`None`), or reads a CDATA section or a
    /// DOCTYPE.
    fn bang(&mut self) -> Result<Option<Token>, ConvertError> {
        let start = self.pos;
        let rest = &self.text[start..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            let len = comment
                .find("-->")
                .ok_or_else(|| xml_error(start, SyntaxError::UnclosedComment))?;
            self.pos = start + 4 + len + 3;
            return Ok(None);
        }
        if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            let len = cdata
                .find("]]>")
                .ok_or_else(|| xml_error(start, SyntaxError::UnclosedCData))?;
            self.span = (start + 9, start + 9 + len);
            self.pos = start + 9 + len + 3;
            return Ok(Some(Token::CData));
        }
        // A DOCTYPE or an error: quick-xml knows where a DOCTYPE ends (its
        // internal subset may hold `>` in quotes, comments and declarations).
        let mut reader = quick_xml::Reader::from_str(rest);
        match reader.read_event() {
            Ok(Event::DocType(_)) => {
                let len = usize::try_from(reader.buffer_position())
                    .ok()
                    .filter(|&len| len <= rest.len())
                    .ok_or_else(|| internal(start))?;
                self.pos = start + len;
                Ok(Some(Token::Doctype))
            }
            Ok(_) => Err(internal(start)),
            Err(error) => {
                let at = usize::try_from(reader.error_position()).unwrap_or(0);
                Err(xml_error(start + at, error))
            }
        }
    }

    /// At `<?`: skips a processing instruction (`None`), or reads an XML
    /// declaration.
    fn processing_instruction(&mut self) -> Result<Option<Token>, ConvertError> {
        let start = self.pos;
        let rest = &self.text[start..];
        // `?>` may not reuse the `?` of `<?`: `<?>` is no instruction.
        match rest[1..].find("?>") {
            Some(len) if len > 0 => {
                let content = &rest[2..1 + len];
                self.span = (start + 2, start + 1 + len);
                self.pos = start + 1 + len + 2;
                let declaration = content.starts_with("xml")
                    && content.as_bytes().get(3).is_none_or(|&b| is_space(b));
                Ok(declaration.then_some(Token::Decl))
            }
            _ => {
                let declaration = rest.starts_with("<?xml")
                    && rest
                        .as_bytes()
                        .get(5)
                        .is_none_or(|&b| is_space(b) || b == b'?');
                let error = if declaration {
                    SyntaxError::UnclosedXmlDecl
                } else {
                    SyntaxError::UnclosedPI
                };
                Err(xml_error(start, error))
            }
        }
    }
}

fn internal(at: usize) -> ConvertError {
    ConvertError::Xml {
        at: at as u64,
        reason: "internal: the DOCTYPE could not be skipped".into(),
    }
}

/// Appends the value of character data to `out`: references resolved, and
/// line ends (`\r\n`, `\r`) made `\n`, as XML 1.0 reads them. `at` is where
/// the text starts, for errors.
pub fn decode_text(raw: &str, at: usize, out: &mut String) -> Result<(), ConvertError> {
    decode(raw, at, out, false)
}

/// Appends an attribute's normalised value to `out`: references resolved,
/// and each tab, line end (`\r\n` included) and newline made a space, as
/// XML 1.0 reads them.
pub fn decode_attribute(raw: &str, at: usize, out: &mut String) -> Result<(), ConvertError> {
    decode(raw, at, out, true)
}

/// What [`decode_text`] and [`decode_attribute`] share; `attribute` picks
/// how white space is normalised and how an unterminated reference is told.
fn decode(raw: &str, at: usize, out: &mut String, attribute: bool) -> Result<(), ConvertError> {
    let bytes = raw.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                out.push_str(&raw[start..i]);
                out.push(if attribute { ' ' } else { '\n' });
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
            }
            b'\t' | b'\n' if attribute => {
                out.push_str(&raw[start..i]);
                out.push(' ');
                i += 1;
            }
            b'&' => {
                out.push_str(&raw[start..i]);
                let len = reference_length(bytes, i, at, attribute)?;
                resolve(&raw[i + 1..i + 1 + len], at + i, out)?;
                i += len + 2;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        start = i;
    }
    out.push_str(&raw[start..]);
    Ok(())
}

/// The length of the name of the reference starting at `bytes[amp]`, up to
/// its `;`. Text ends at `<`, so another `&` before the `;` is an error there;
/// an attribute value only needs the `;`.
fn reference_length(
    bytes: &[u8],
    amp: usize,
    at: usize,
    attribute: bool,
) -> Result<usize, ConvertError> {
    let rest = &bytes[amp + 1..];
    if attribute {
        return rest
            .iter()
            .position(|&b| b == b';')
            .ok_or_else(|| xml_error(at + amp, EscapeError::UnterminatedEntity(amp..bytes.len())));
    }
    rest.iter()
        .position(|&b| b == b';' || b == b'&')
        .filter(|&len| rest[len] == b';')
        .ok_or_else(|| xml_error(at + amp, IllFormedError::UnclosedReference))
}

/// Appends what the reference `&name;` stands for: a character reference,
/// or one of the five predefined entities. Nothing else is defined (no DTD is
/// ever read).
fn resolve(name: &str, at: usize, out: &mut String) -> Result<(), ConvertError> {
    match BytesRef::new(name).resolve_char_ref() {
        Ok(Some(c)) => out.push(c),
        Ok(None) => match resolve_xml_entity(name) {
            Some(text) => out.push_str(text),
            None => return Err(ConvertError::UnknownEntity(name.to_string())),
        },
        Err(error) => return Err(xml_error(at, error)),
    }
    Ok(())
}

/// Appends `raw` with its line ends made `\n`: a CDATA section's value.
pub fn normalize_line_ends(raw: &str, out: &mut String) {
    let mut lines = raw.split('\r');
    if let Some(first) = lines.next() {
        out.push_str(first);
    }
    for line in lines {
        out.push('\n');
        out.push_str(line.strip_prefix('\n').unwrap_or(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reader finds in `text`: each token, with what it holds.
    #[derive(Debug, PartialEq)]
    enum Found<'a> {
        Text(Raw<'a>),
        Start(Name<'a>),
        End(&'a str),
        CData(&'a str),
        Decl(&'a str),
        Doctype,
    }

    fn tokens(text: &str) -> Result<Vec<Found<'_>>, ConvertError> {
        let mut reader = Reader::new(text);
        let mut found = Vec::new();
        loop {
            found.push(match reader.next()? {
                Token::Text => Found::Text(reader.text()),
                Token::Start => {
                    let name = reader.name();
                    while reader.tag_end()?.is_none() {
                        reader.attribute()?;
                    }
                    Found::Start(name)
                }
                Token::End => Found::End(reader.end_tag("")?),
                Token::CData => Found::CData(reader.content()),
                Token::Decl => Found::Decl(reader.content()),
                Token::Doctype => Found::Doctype,
                Token::Eof => return Ok(found),
            });
        }
    }

    fn raw(text: &str, plain: bool) -> Raw<'_> {
        Raw { text, plain }
    }

    fn name(text: &str, valid: bool) -> Name<'_> {
        Name { text, valid }
    }

    #[test]
    fn tokens_in_order() {
        assert_eq!(
            tokens("<?xml version=\"1.0\"?><!-- c --><a>x&amp;<![CDATA[<y>]]><?pi?></a >\n"),
            Ok(vec![
                Found::Decl("xml version=\"1.0\""),
                Found::Start(name("a", true)),
                Found::Text(raw("x&amp;", false)),
                Found::CData("<y>"),
                Found::End("a"),
                Found::Text(raw("\n", true)),
            ])
        );
        assert_eq!(
            tokens("<!DOCTYPE a [<!ENTITY e \">\">]><é1 x='1'/>"),
            Ok(vec![Found::Doctype, Found::Start(name("é1", false))])
        );
    }

    #[test]
    fn attributes() {
        let text = "<a x = '1\"' y=\"a&amp;\tb\"z=''/>";
        let mut reader = Reader::new(text);
        assert_eq!(reader.next(), Ok(Token::Start));
        let mut found = Vec::new();
        while reader.tag_end() == Ok(None) {
            reader.attribute().expect("valid");
            found.push((reader.name(), reader.value()));
        }
        assert_eq!(reader.position(), text.len());
        assert_eq!(
            found,
            [
                (name("x", true), raw("1\"", true)),
                (name("y", true), raw("a&amp;\tb", false)),
                (name("z", true), raw("", true)),
            ]
        );
    }

    #[test]
    fn unclosed_markup_is_an_error() {
        for text in [
            "<",
            "<a",
            "<a x",
            "<a x=",
            "<a x='1",
            "<a x='1'",
            "</a",
            "</a '>",
            "<!--",
            "<!-- -->",
            "<![CDATA[",
            "<!DOCTYPE a",
            "<?pi",
            "<?>",
            "<!x>",
        ] {
            let result = tokens(text);
            assert!(
                matches!(result, Err(ConvertError::Xml { .. })) || text == "<!-- -->",
                "{text}: {result:?}"
            );
        }
    }

    #[test]
    fn decoding() {
        let decoded = |text: &str, attribute: bool| {
            let mut out = String::new();
            let decode = if attribute {
                decode_attribute
            } else {
                decode_text
            };
            decode(text, 0, &mut out).map(|()| out)
        };
        assert_eq!(
            decoded("a\r\nb\rc&lt;&#65;&#x42;\t", false).as_deref(),
            Ok("a\nb\nc<AB\t")
        );
        assert_eq!(
            decoded("a\r\nb\rc&lt;&#10;\t", true).as_deref(),
            Ok("a b c<\n ")
        );
        assert_eq!(
            decoded("&nbsp;", false),
            Err(ConvertError::UnknownEntity("nbsp".into()))
        );
        for bad in ["&amp", "&a&b;", "&#0;", "&#xD800;", "&#-1;", "&#x;"] {
            assert!(
                matches!(decoded(bad, false), Err(ConvertError::Xml { .. })),
                "{bad}"
            );
        }
        let mut out = String::new();
        normalize_line_ends("a\r\nb\rc\n", &mut out);
        assert_eq!(out, "a\nb\nc\n");
    }
}
