//! A small JSON reader that keeps what `serde_json::Value` loses here:
//! object members in document order (duplicates included) and numbers as the
//! text they were written as (`1e999`, 2^64 + 1, `1.10`). serde_json's
//! `preserve_order` and `arbitrary_precision` would do it too, but features
//! unify across the workspace and would change every other plugin's JSON.

use crate::error::ConvertError;
use crate::swar;
use std::borrow::Cow;

/// A JSON value borrowing from its text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Number(&'a str),
    /// A string, unescaped.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Value<'a>>),
    /// An object's members in order.
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// Bounds on what is read: nesting and the number of values.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Arrays and objects nested deeper fail.
    pub max_depth: usize,
    /// More values (of any kind) fail.
    pub max_values: usize,
}

/// Parses `text` as one JSON value (surrounding whitespace allowed).
pub fn parse(text: &str, limits: Limits) -> Result<Value<'_>, ConvertError> {
    let mut reader = Reader {
        text,
        pos: 0,
        depth: 0,
        values: 0,
        limits,
    };
    let value = reader.value()?;
    reader.skip_space();
    if reader.pos != text.len() {
        return Err(reader.error("unexpected text after the value"));
    }
    Ok(value)
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    values: usize,
    limits: Limits,
}

impl<'a> Reader<'a> {
    fn error(&self, reason: &'static str) -> ConvertError {
        ConvertError::Json {
            at: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, literal: &str) -> Result<(), ConvertError> {
        if self.text[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn value(&mut self) -> Result<Value<'a>, ConvertError> {
        self.skip_space();
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(ConvertError::TooManyElements(self.limits.max_values));
        }
        match self.peek() {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.expect("true").map(|()| Value::Bool(true)),
            Some(b'f') => self.expect("false").map(|()| Value::Bool(false)),
            Some(b'n') => self.expect("null").map(|()| Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn nested(
        &mut self,
        read: fn(&mut Self) -> Result<Value<'a>, ConvertError>,
    ) -> Result<Value<'a>, ConvertError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(ConvertError::TooDeep(self.limits.max_depth));
        }
        self.pos += 1;
        let value = read(self)?;
        self.depth -= 1;
        Ok(value)
    }

    /// After `[`.
    fn array(&mut self) -> Result<Value<'a>, ConvertError> {
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                None => return Err(self.error("unexpected end")),
                Some(_) => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// After `{`.
    fn object(&mut self) -> Result<Value<'a>, ConvertError> {
        let mut members = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_space();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.error("unexpected end")),
                Some(_) => return Err(self.error("expected a string key")),
            }
            let key = self.string()?;
            self.skip_space();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:`"));
            }
            self.pos += 1;
            members.push((key, self.value()?));
            self.skip_space();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                None => return Err(self.error("unexpected end")),
                Some(_) => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    /// At `"`: borrowed when there is nothing to unescape.
    fn string(&mut self) -> Result<Cow<'a, str>, ConvertError> {
        self.pos += 1;
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut run = start;
        loop {
            // Most of a string is neither `"`, `\\` nor a control character:
            // skipped eight bytes at a time.
            while let Some(word) = swar::word_at(bytes, self.pos) {
                let found =
                    swar::equal(word, b'"') | swar::equal(word, b'\\') | swar::control(word);
                if found != 0 {
                    self.pos += swar::first(found);
                    break;
                }
                self.pos += 8;
            }
            let Some(&b) = bytes.get(self.pos) else {
                return Err(self.error("unterminated string"));
            };
            match b {
                b'"' => {
                    let text = &self.text[run..self.pos];
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(text),
                        Some(mut s) => {
                            s.push_str(text);
                            Cow::Owned(s)
                        }
                    });
                }
                b'\\' => {
                    let mut s = owned.take().unwrap_or_default();
                    s.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    s.push(self.escape()?);
                    owned = Some(s);
                    run = self.pos;
                }
                0..=0x1F => return Err(self.error("control character in a string")),
                _ => self.pos += 1,
            }
        }
    }

    /// After `\`: the escaped character.
    fn escape(&mut self) -> Result<char, ConvertError> {
        let Some(b) = self.peek() else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{C}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = self.hex4()?;
                if !(0xD800..0xDC00).contains(&high) {
                    return char::from_u32(high).ok_or_else(|| self.error("lone surrogate"));
                }
                if !self.text[self.pos..].starts_with("\\u") {
                    return Err(self.error("lone surrogate"));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..0xE000).contains(&low) {
                    return Err(self.error("lone surrogate"));
                }
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                char::from_u32(code).ok_or_else(|| self.error("lone surrogate"))?
            }
            _ => {
                self.pos -= 1;
                return Err(self.error("invalid escape"));
            }
        })
    }

    fn hex4(&mut self) -> Result<u32, ConvertError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid \\u escape"))
    }

    /// A number, checked against JSON's grammar and kept as text.
    fn number(&mut self) -> Result<Value<'a>, ConvertError> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        let text = &self.text[start..self.pos];
        if !crate::json_writer::is_json_number(text) {
            self.pos = start;
            return Err(self.error("invalid number"));
        }
        Ok(Value::Number(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_depth: 8,
        max_values: 100,
    };

    fn s(text: &str) -> Value<'_> {
        Value::String(Cow::Borrowed(text))
    }

    #[test]
    fn keeps_order_duplicates_and_number_text() {
        let v = parse(
            r#" {"b": 1e999, "a": [18446744073709551617, -0.10], "b": null} "#,
            LIMITS,
        );
        assert_eq!(
            v.expect("valid"),
            Value::Object(vec![
                ("b".into(), Value::Number("1e999")),
                (
                    "a".into(),
                    Value::Array(vec![
                        Value::Number("18446744073709551617"),
                        Value::Number("-0.10")
                    ])
                ),
                ("b".into(), Value::Null),
            ])
        );
    }

    #[test]
    fn strings_unescape() {
        assert_eq!(parse(r#""plain""#, LIMITS).expect("valid"), s("plain"));
        assert_eq!(
            parse(r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z""#, LIMITS).expect("valid"),
            Value::String("a\"\\/\u{8}\u{C}\n\r\té😀z".into())
        );
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            ("", 0, "unexpected end"),
            ("[1,]", 3, "expected a value"),
            ("{\"a\" 1}", 5, "expected `:`"),
            ("[1 2]", 3, "expected `,` or `]`"),
            ("\"\\ud800\"", 7, "lone surrogate"),
            ("\"\\udc00\"", 7, "lone surrogate"),
            ("\"a\nb\"", 2, "control character in a string"),
            ("\"abc", 4, "unterminated string"),
            ("01", 0, "invalid number"),
            ("1.", 0, "invalid number"),
            ("tru", 0, "expected a value"),
            ("{} x", 3, "unexpected text after the value"),
            ("\"\\x\"", 2, "invalid escape"),
        ];
        for (text, at, reason) in cases {
            assert_eq!(
                parse(text, LIMITS),
                Err(ConvertError::Json { at, reason }),
                "{text}"
            );
        }
    }

    #[test]
    fn limits() {
        assert_eq!(
            parse("[[[[[[[[[]]]]]]]]]", LIMITS),
            Err(ConvertError::TooDeep(8))
        );
        assert!(parse("[[[[[[[[]]]]]]]]", LIMITS).is_ok());
        let many = format!("[{}0]", "0,".repeat(99));
        assert_eq!(
            parse(&many, LIMITS),
            Err(ConvertError::TooManyElements(100))
        );
    }
}
