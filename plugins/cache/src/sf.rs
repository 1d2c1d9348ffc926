//! A Structured Field Dictionary parser (RFC 8941 section 4.2.2), for the
//! targeted cache-control fields of RFC 9213 (`CDN-Cache-Control`): those
//! are dictionaries, and a field that does not parse is ignored whole.
//!
//! Only what the cache reads is kept of each member's value: an integer, a
//! boolean, or something else; parameters are checked and dropped.

/// A member's value, as far as cache directives need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An Integer.
    Integer(i64),
    /// A Boolean; a member without `=` is `true`.
    Boolean(bool),
    /// A Decimal, String, Token, Byte Sequence or Inner List.
    Other,
}

/// The members of `text` in order, later duplicates replacing earlier ones
/// in place; `None` when `text` is not a valid dictionary.
pub fn parse_dictionary(text: &str) -> Option<Vec<(String, Value)>> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    parser.skip(b" ");
    let mut members: Vec<(String, Value)> = Vec::new();
    while !parser.done() {
        let (key, value) = parser.member()?;
        match members.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = value,
            None => members.push((key, value)),
        }
        parser.skip(b" \t");
        if parser.done() {
            break;
        }
        parser.expect(b',')?;
        parser.skip(b" \t");
        if parser.done() {
            // A trailing comma.
            return None;
        }
    }
    Some(members)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip(&mut self, what: &[u8]) {
        while self.peek().is_some_and(|b| what.contains(&b)) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    fn member(&mut self) -> Option<(String, Value)> {
        let key = self.key()?;
        let value = if self.peek() == Some(b'=') {
            self.at += 1;
            if self.peek() == Some(b'(') {
                self.inner_list()?;
                Value::Other
            } else {
                self.bare_item()?
            }
        } else {
            Value::Boolean(true)
        };
        self.parameters()?;
        Some((key, value))
    }

    fn key(&mut self) -> Option<String> {
        let start = self.at;
        let first = self.peek()?;
        if !(first.is_ascii_lowercase() || first == b'*') {
            return None;
        }
        self.skip(b"abcdefghijklmnopqrstuvwxyz0123456789_-.*");
        std::str::from_utf8(&self.bytes[start..self.at])
            .ok()
            .map(str::to_string)
    }

    fn parameters(&mut self) -> Option<()> {
        while self.peek() == Some(b';') {
            self.at += 1;
            self.skip(b" ");
            self.key()?;
            if self.peek() == Some(b'=') {
                self.at += 1;
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn inner_list(&mut self) -> Option<()> {
        self.expect(b'(')?;
        loop {
            self.skip(b" ");
            if self.peek() == Some(b')') {
                self.at += 1;
                return self.parameters();
            }
            self.bare_item()?;
            self.parameters()?;
            // Items are separated by at least one space.
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    fn bare_item(&mut self) -> Option<Value> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b':' => self.byte_sequence(),
            b'?' => self.boolean(),
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.at += 1;
                self.skip(b"!#$%&'*+-.^_`|~:/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
                Some(Value::Other)
            }
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Value> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let start = self.at;
        self.skip(b"0123456789");
        let integer_digits = self.at - start;
        if integer_digits == 0 {
            return None;
        }
        if self.peek() != Some(b'.') {
            if integer_digits > 15 {
                return None;
            }
            let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
            let magnitude: i64 = text.parse().ok()?;
            return Some(Value::Integer(if negative {
                -magnitude
            } else {
                magnitude
            }));
        }
        self.at += 1;
        let fraction_start = self.at;
        self.skip(b"0123456789");
        let fraction_digits = self.at - fraction_start;
        if integer_digits > 12 || !(1..=3).contains(&fraction_digits) {
            return None;
        }
        Some(Value::Other)
    }

    fn string(&mut self) -> Option<Value> {
        self.expect(b'"')?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(Value::Other);
                }
                b'\\' => {
                    self.at += 1;
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                    self.at += 1;
                }
                0x20..=0x7e => self.at += 1,
                _ => return None,
            }
        }
    }

    fn byte_sequence(&mut self) -> Option<Value> {
        self.expect(b':')?;
        self.skip(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
        self.expect(b':')?;
        Some(Value::Other)
    }

    fn boolean(&mut self) -> Option<Value> {
        self.expect(b'?')?;
        let value = match self.peek()? {
            b'0' => false,
            b'1' => true,
            _ => return None,
        };
        self.at += 1;
        Some(Value::Boolean(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Option<Vec<(String, Value)>> {
        parse_dictionary(text)
    }

    #[test]
    fn directives_parse_as_dictionary_members() {
        assert_eq!(
            members("max-age=600, no-store, private=?0"),
            Some(vec![
                ("max-age".into(), Value::Integer(600)),
                ("no-store".into(), Value::Boolean(true)),
                ("private".into(), Value::Boolean(false)),
            ])
        );
        assert_eq!(
            members(
                "no-cache=(\"set-cookie\" \"x-user\");a=1, x=\"a\\\"b\", y=:aGk=:, z=tok/en:1, d=1.5"
            ),
            Some(vec![
                ("no-cache".into(), Value::Other),
                ("x".into(), Value::Other),
                ("y".into(), Value::Other),
                ("z".into(), Value::Other),
                ("d".into(), Value::Other),
            ])
        );
        assert_eq!(members(""), Some(vec![]));
        assert_eq!(
            members("  none"),
            Some(vec![("none".into(), Value::Boolean(true))])
        );
    }

    #[test]
    fn the_last_of_repeated_members_wins_and_parameters_are_dropped() {
        assert_eq!(
            members("max-age=30, max-age=60;x=y"),
            Some(vec![("max-age".into(), Value::Integer(60))])
        );
        assert_eq!(
            members("max-age=-5"),
            Some(vec![("max-age".into(), Value::Integer(-5))])
        );
    }

    #[test]
    fn invalid_dictionaries_are_refused() {
        for text in [
            "Max-Age=60",
            "max-age=60,",
            "max-age=60;",
            "max-age=\"60",
            "max-age=1234567890123456",
            "max-age=1.2345",
            "max-age=60 no-store",
            "max-age==60",
            "a=(1 2",
            "a=(1,2)",
            "a=?2",
            "a=é",
            ",",
        ] {
            assert_eq!(members(text), None, "{text}");
        }
    }
}
