//! What XML 1.0 allows in names and in character data.

use crate::swar;
use std::collections::BTreeSet;

/// `NameStartChar` of XML 1.0 (fifth edition), colon included.
pub fn is_name_start(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// `NameChar` of XML 1.0.
fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// ASCII bytes allowed in names: 1 to start one, 2 after the start.
const NAME_BYTE: [u8; 128] = {
    let mut class = [0; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            class[b] = 3;
        } else if c.is_ascii_digit() || c == b'-' || c == b'.' {
            class[b] = 2;
        }
        b += 1;
    }
    class
};

/// Whether `name` is an XML `Name` (prefixed names such as `soap:Body` are).
/// A name cannot hold `"`, `\\` or a control character, so names are written
/// into JSON without escaping.
pub fn is_name(name: &str) -> bool {
    // Most names are ASCII: those are checked bytewise, in one pass.
    let mut need = 1;
    for &b in name.as_bytes() {
        if b >= 0x80 {
            let mut chars = name.chars();
            return chars.next().is_some_and(is_name_start) && chars.all(is_name_char);
        }
        if NAME_BYTE[b as usize] & need == 0 {
            return false;
        }
        need = 2;
    }
    need == 2
}

/// The local part of a prefixed name: `Body` for `soap:Body`.
#[inline]
pub fn local_name(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, local)| local)
}

/// Whether `name` declares a namespace (`xmlns` or `xmlns:p`).
#[inline]
pub fn is_namespace_declaration(name: &str) -> bool {
    name == "xmlns" || name.starts_with("xmlns:")
}

/// How a writer treats one byte of text (see [`BYTE_CLASS`]).
pub type ByteClass = u8;
/// Copied as is.
pub const COPY: ByteClass = 0;
/// Starts a character XML 1.0 cannot carry, even as a reference: a C0
/// control other than tab, newline and carriage return.
pub const REFUSE: ByteClass = 1;
/// 0xEF: starts U+FFFE or U+FFFF (refused) or a harmless character.
pub const CHECK: ByteClass = 2;
/// `"`, `\\`, `&`, `<`, `>`, tab, newline, carriage return: a writer may
/// need to escape it.
pub const SPECIAL: ByteClass = 3;

/// The class of each byte, for writers that escape and check in one pass.
pub const BYTE_CLASS: [ByteClass; 256] = {
    let mut class = [COPY; 256];
    let mut b = 0;
    while b < 0x20 {
        class[b] = REFUSE;
        b += 1;
    }
    let special = [b'\t', b'\n', b'\r', b'"', b'\\', b'&', b'<', b'>'];
    let mut i = 0;
    while i < special.len() {
        class[special[i] as usize] = SPECIAL;
        i += 1;
    }
    class[0xEF] = CHECK;
    class
};

/// For byte `i` of `text` whose class is [`REFUSE`] or [`CHECK`]: the
/// character there if XML cannot carry it.
pub fn refused_char_at(text: &str, i: usize) -> Option<u32> {
    let bytes = text.as_bytes();
    let refused = match BYTE_CLASS[bytes[i] as usize] {
        REFUSE => true,
        CHECK => bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)),
        _ => false,
    };
    refused.then(|| text[i..].chars().next().map_or(0, u32::from))
}

/// XML's whitespace: space, tab, carriage return, newline (not Unicode's).
pub fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Whether `text` is only XML whitespace (or empty). XML's whitespace is
/// ASCII, so bytes will do.
#[inline]
pub fn is_blank(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// `text` without leading and trailing XML whitespace.
#[inline]
pub fn trim_xml(text: &str) -> &str {
    text.trim_matches(is_xml_space)
}

/// The attribute names of one element, to keep the first of duplicates:
/// compared pairwise while few, then in a set, so 256 attributes on every
/// element stay cheap.
#[derive(Debug, Default)]
pub struct NameSet<'a> {
    few: Vec<&'a str>,
    many: BTreeSet<&'a str>,
}

impl<'a> NameSet<'a> {
    const FEW: usize = 16;

    /// Forgets every name.
    #[inline]
    pub fn clear(&mut self) {
        self.few.clear();
        // Clearing even an empty map costs a call, once per element.
        if !self.many.is_empty() {
            self.many.clear();
        }
    }

    /// Adds `name`; false if it was there already.
    #[inline]
    pub fn insert(&mut self, name: &'a str) -> bool {
        if self.few.len() < Self::FEW {
            if self
                .few
                .iter()
                .any(|seen| swar::same(seen.as_bytes(), name.as_bytes()))
            {
                return false;
            }
            self.few.push(name);
            return true;
        }
        if self.many.is_empty() {
            self.many.extend(self.few.iter().copied());
        }
        self.many.insert(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "soap:Body", "_x", "a-b.c", "é", "日本", "xmlns:soap"] {
            assert!(is_name(good), "{good}");
        }
        for bad in ["", "1a", "-a", "a b", "@a", "#text", "a\"b", "a>b"] {
            assert!(!is_name(bad), "{bad}");
        }
        assert_eq!(local_name("soap:Body"), "Body");
        assert_eq!(local_name("Body"), "Body");
    }

    #[test]
    fn characters() {
        let refused = |text: &str| (0..text.len()).find_map(|i| refused_char_at(text, i));
        assert_eq!(refused("a\tb\nc\r<&\"é"), None);
        assert_eq!(refused("ok\u{1}"), Some(1));
        assert_eq!(refused("x\u{FFFE}"), Some(0xFFFE));
        assert_eq!(refused("x\u{FFFF}"), Some(0xFFFF));
        assert_eq!(refused("\u{FFFD}\u{EFBF}"), None);
        assert_eq!(trim_xml(" \u{A0}x\n"), "\u{A0}x");
    }

    #[test]
    fn name_sets_past_the_pairwise_range() {
        let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        let mut set = NameSet::default();
        for name in &names {
            assert!(set.insert(name));
        }
        for name in &names {
            assert!(!set.insert(name), "{name}");
        }
        set.clear();
        assert!(set.insert("n0"));
    }
}
