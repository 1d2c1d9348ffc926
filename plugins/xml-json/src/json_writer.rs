//! JSON text written directly, compact or indented like Python's
//! `json.dumps(indent=2)`: object members in the order given (no map sorts
//! them) and numbers as the digits they were written with.

use crate::error::ConvertError;
use crate::names::refused_char_at;
use crate::swar;

/// Indentation for [`JsonWriter::newline`], copied at once.
const SPACES: &str = "                                                                ";

/// Writes one JSON value made of objects, arrays, strings, raw numbers,
/// booleans and nulls. The caller opens and closes containers in order.
pub struct JsonWriter {
    out: String,
    pretty: bool,
    indent: usize,
    /// A container was just opened and has no member yet.
    fresh: bool,
    limit: usize,
}

impl JsonWriter {
    /// A writer whose output may not grow past `limit` bytes.
    pub fn new(pretty: bool, capacity: usize, limit: usize) -> Self {
        JsonWriter {
            out: String::with_capacity(capacity.min(limit)),
            pretty,
            indent: 0,
            fresh: false,
            limit,
        }
    }

    /// The JSON text.
    pub fn finish(self) -> Result<String, ConvertError> {
        self.check_size()?;
        Ok(self.out)
    }

    /// Fails once the output is over its limit; called once per element, so
    /// the overshoot is bounded by one element's own size.
    #[inline(always)]
    pub fn check_size(&self) -> Result<(), ConvertError> {
        if self.out.len() > self.limit {
            return Err(ConvertError::TooLarge(self.limit));
        }
        Ok(())
    }

    #[inline(always)]
    fn newline(&mut self) {
        if self.pretty {
            self.out.push('\n');
            // Levels past the constant's are rare: a second round, or more.
            let mut spaces = 2 * self.indent;
            while spaces > 0 {
                let run = spaces.min(SPACES.len());
                self.out.push_str(&SPACES[..run]);
                spaces -= run;
            }
        }
    }

    /// Before each array item.
    #[inline(always)]
    pub fn item(&mut self) {
        if !self.fresh {
            self.out.push(',');
        }
        self.fresh = false;
        self.newline();
    }

    /// An object member's key: `prefix`, already escaped (see [`escaped`]),
    /// and `name`, an XML name, which needs no escaping.
    #[inline(always)]
    pub fn key(&mut self, prefix: &str, name: &str) {
        self.item();
        self.out.push('"');
        if !prefix.is_empty() {
            self.out.push_str(prefix);
        }
        self.out.push_str(name);
        // Two constants, not one chosen: a copy of known length is inlined.
        if self.pretty {
            self.out.push_str("\": ");
        } else {
            self.out.push_str("\":");
        }
    }

    /// Opens an object (`{`) or array (`[`).
    #[inline(always)]
    pub fn open(&mut self, bracket: char) {
        self.out.push(bracket);
        self.indent += 1;
        self.fresh = true;
    }

    /// Closes the innermost container with `}` or `]`.
    #[inline(always)]
    pub fn close(&mut self, bracket: char) {
        self.indent -= 1;
        if !self.fresh {
            self.newline();
        }
        self.fresh = false;
        self.out.push(bracket);
    }

    /// A string.
    #[inline(always)]
    pub fn string(&mut self, text: &str) -> Result<(), ConvertError> {
        self.out.push('"');
        push_escaped(&mut self.out, text)?;
        self.out.push('"');
        Ok(())
    }

    /// A number, boolean or `null` as is: the caller checked the grammar.
    #[inline(always)]
    pub fn raw(&mut self, literal: &str) {
        self.out.push_str(literal);
    }

    /// Bytes written so far: where the next value will start.
    #[inline(always)]
    pub fn position(&self) -> usize {
        self.out.len()
    }

    /// Moves what was written from `at` on into `into` (cleared first), to
    /// be written again in another order. `fresh` tells whether the innermost
    /// container is left without members.
    pub fn take_from(&mut self, at: usize, fresh: bool, into: &mut String) {
        into.clear();
        into.push_str(&self.out[at..]);
        self.out.truncate(at);
        self.fresh = fresh;
    }

    /// Makes the value written from `at` on the first item of an array:
    /// `[` before it, and when pretty, its lines indented once more. The
    /// array is left open for more items. Returns where the value now
    /// starts. `scratch` is a buffer to reuse.
    pub fn wrap_in_array(&mut self, at: usize, scratch: &mut String) -> usize {
        self.take_from(at, self.fresh, scratch);
        self.open('[');
        self.item();
        let start = self.position();
        self.value_again(scratch, true);
        start
    }

    /// A value written before (see [`Self::take_from`]), now one level
    /// deeper when `deeper`: when pretty, its lines are indented once more.
    pub fn value_again(&mut self, value: &str, deeper: bool) {
        if !(self.pretty && deeper) {
            self.out.push_str(value);
            return;
        }
        // Only indentation breaks lines: strings escape their line feeds.
        let mut lines = value.split('\n');
        if let Some(first) = lines.next() {
            self.out.push_str(first);
        }
        for line in lines {
            self.out.push_str("\n  ");
            self.out.push_str(line);
        }
    }
}

/// `text` escaped for a JSON string, without the quotes: for the configured
/// attribute prefix and text key, escaped once per document.
pub fn escaped(text: &str) -> Result<String, ConvertError> {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text)?;
    Ok(out)
}

/// Escapes `text` into a JSON string's body, in one pass. Only characters XML
/// can carry reach here from XML, so a control character (or U+FFFE, U+FFFF)
/// is a document XML forbids, and refused.
fn push_escaped(out: &mut String, text: &str) -> Result<(), ConvertError> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    loop {
        i = next_to_check(bytes, i);
        let Some(&b) = bytes.get(i) else { break };
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            _ => match refused_char_at(text, i) {
                Some(bad) => return Err(ConvertError::InvalidChar(bad)),
                None => {
                    i += 1;
                    continue;
                }
            },
        };
        out.push_str(&text[start..i]);
        out.push_str(escape);
        i += 1;
        start = i;
    }
    out.push_str(&text[start..]);
    Ok(())
}

/// The offset of the first byte from `i` on that a JSON string must escape
/// or check: `"`, `\`, a control character, or 0xEF (which starts U+FFFE
/// and U+FFFF). Most strings have none, and are looked at eight bytes at a
/// time.
fn next_to_check(bytes: &[u8], mut i: usize) -> usize {
    while let Some(word) = swar::word_at(bytes, i) {
        let found = swar::equal(word, b'"')
            | swar::equal(word, b'\\')
            | swar::equal(word, 0xEF)
            | swar::control(word);
        if found != 0 {
            return i + swar::first(found);
        }
        i += 8;
    }
    // The last few bytes (all of a short string): a table, one load a byte.
    while bytes.get(i).is_some_and(|&b| !JSON_CHECK[usize::from(b)]) {
        i += 1;
    }
    i
}

/// The bytes [`next_to_check`] stops at.
const JSON_CHECK: [bool; 256] = {
    let mut check = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        check[b] = true;
        b += 1;
    }
    check[b'"' as usize] = true;
    check[b'\\' as usize] = true;
    check[0xEF] = true;
    check
};

/// Whether `text` is a number in JSON's grammar
/// (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), so it can be written
/// as its own digits: `1e999` and 2^64 stay exact, `007`, `+1`, `.5`, `NaN`
/// do not qualify and stay strings.
pub fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_grammar() {
        for good in [
            "0",
            "-0",
            "12",
            "1.5",
            "1e999",
            "-1.0E+2",
            "18446744073709551617",
        ] {
            assert!(is_json_number(good), "{good}");
        }
        for bad in [
            "", "-", "007", "+1", ".5", "1.", "1e", "0x1", "NaN", "Infinity", " 1", "1 ",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn compact_and_pretty() {
        for (pretty, expected) in [
            (false, r#"{"a":["x\"y",1],"b":{},"c":[]}"#),
            (
                true,
                "{\n  \"a\": [\n    \"x\\\"y\",\n    1\n  ],\n  \"b\": {},\n  \"c\": []\n}",
            ),
        ] {
            let mut w = JsonWriter::new(pretty, 0, 1000);
            w.open('{');
            w.key("", "a");
            w.open('[');
            w.item();
            w.string("x\"y").expect("fits");
            w.item();
            w.raw("1");
            w.close(']');
            w.key("", "b");
            w.open('{');
            w.close('}');
            w.key("", "c");
            w.open('[');
            w.close(']');
            w.close('}');
            assert_eq!(w.finish().expect("fits"), expected);
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(
            escaped("a\"b\\c\nd\re\tfé\u{FFFD}\u{EFBF}").as_deref(),
            Ok("a\\\"b\\\\c\\nd\\re\\tfé\u{FFFD}\u{EFBF}")
        );
        for (text, bad) in [
            ("\u{0}", 0),
            ("x\u{8}", 8),
            ("\u{1F}", 0x1F),
            ("\u{FFFE}", 0xFFFE),
            ("a\u{FFFF}", 0xFFFF),
        ] {
            assert_eq!(
                escaped(text),
                Err(ConvertError::InvalidChar(bad)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn controls_are_refused_and_limits_hold() {
        let mut w = JsonWriter::new(false, 0, 4);
        assert_eq!(w.string("\u{1}"), Err(ConvertError::InvalidChar(1)));
        w.string("long text").expect("written before the check");
        assert_eq!(w.finish(), Err(ConvertError::TooLarge(4)));
    }
}
