//! Gathering every error in a config file, so one run reports them all, and
//! saying each in the config's terms.
//!
//! [`Problems`] collects located errors while validation goes on past the
//! first one; [`in_config_terms`] rewrites what serde says (Rust type names,
//! "field", "sequence") into what the file says (keys, tables, arrays), with a
//! "did you mean" from [`closest`] when a name is misspelt.

use super::source::{ConfigError, Source};
use std::ops::Range;

/// The errors found so far in one file.
pub struct Problems<'s> {
    source: &'s Source,
    found: Vec<ConfigError>,
}

impl<'s> Problems<'s> {
    /// No errors yet, in `source`.
    pub fn new(source: &'s Source) -> Self {
        Self {
            source,
            found: Vec::new(),
        }
    }

    /// The file the errors are in.
    pub fn source(&self) -> &'s Source {
        self.source
    }

    /// Records an error at the start of `span`.
    pub fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.found.push(self.source.error(span, message));
    }

    /// Records `error` (each of them, when it is several).
    pub fn push(&mut self, error: ConfigError) {
        match error {
            ConfigError::Several(errors) => self.found.extend(errors),
            one => self.found.push(one),
        }
    }

    /// The value of `result`, or `None` with its error recorded.
    pub fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    /// How many errors are recorded so far.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether nothing is wrong so far.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// `value` when nothing was found wrong; otherwise every error, in file
    /// order.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        let mut found: Vec<(String, ConfigError)> =
            self.found.into_iter().map(|e| (e.to_string(), e)).collect();
        found
            .sort_by(|(a_text, a), (b_text, b)| a.place().cmp(&b.place()).then(a_text.cmp(b_text)));
        found.dedup_by(|(a, _), (b, _)| a == b);
        let mut found: Vec<ConfigError> = found.into_iter().map(|(_, e)| e).collect();
        match found.len() {
            0 => Ok(value),
            1 => Err(found.remove(0)),
            _ => Err(ConfigError::Several(found)),
        }
    }
}

impl Problems<'_> {
    /// Every error found, or the value when none was. A `None` value comes
    /// with its error recorded, here or (a part it depends on) by the caller.
    pub fn finish_some<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        self.finish(value)?.ok_or_else(ConfigError::reported)
    }
}

/// Of `known`, the name `given` is most likely a misspelling of, if any is
/// close enough to suggest.
pub fn closest<'k>(given: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    // Too short to tell a misspelling from another name.
    if given.chars().count() < 3 {
        return None;
    }
    let given_lower = given.to_ascii_lowercase();
    known
        .into_iter()
        .map(|name| {
            let score = strsim::jaro_winkler(&given_lower, &name.to_ascii_lowercase());
            (score, name)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// "; did you mean `x`?" when one of `known` is close to `given`, else
/// "; NOUN: a, b, c" listing them (or saying there are none).
pub fn suggestion(given: &str, noun: &str, known: &[&str]) -> String {
    match closest(given, known.iter().copied()) {
        Some(near) => format!("; did you mean `{near}`?"),
        None if known.is_empty() => format!("; {noun}: none"),
        None => format!("; {noun}: {}", known.join(", ")),
    }
}

/// What serde says, in the config's terms: keys and tables instead of fields
/// and structs, no Rust type names, and a "did you mean" for a misspelt key
/// or value.
pub fn in_config_terms(message: &str) -> String {
    let message = message.trim_end();
    // serde_json's position in a plugin's JSON config says nothing about
    // the TOML it came from.
    let message = match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return unknown("key", rest, "valid keys here");
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        return unknown("value", rest, "expected one of");
    }
    if let Some(key) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return format!("missing key `{key}`");
    }
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!(
            "expected {}, found {}",
            expected_thing(expected),
            found_thing(found)
        );
    }
    message.to_string()
}

/// "unknown key `x`; did you mean `y`?" from serde's "unknown field `x`,
/// expected one of `a`, `b`" (the text after the first backtick).
fn unknown(what: &str, rest: &str, list_noun: &str) -> String {
    let Some((given, expected)) = rest.split_once('`') else {
        return format!("unknown {what} `{rest}");
    };
    let known: Vec<&str> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| !name.is_empty())
        .collect();
    if known.is_empty() {
        return format!("unknown {what} `{given}`: none is allowed here");
    }
    format!(
        "unknown {what} `{given}`{}",
        suggestion(given, list_noun, &known)
    )
}

/// serde's name for what it wanted, as the config calls it.
fn expected_thing(expected: &str) -> String {
    let expected = expected.trim();
    let word = expected
        .strip_prefix("a ")
        .or_else(|| expected.strip_prefix("an "))
        .unwrap_or(expected);
    match word {
        w if w.starts_with("struct ") || w == "map" => "a table".to_string(),
        w if w.starts_with("enum ") => "one of the names listed for this key".to_string(),
        "sequence" | "tuple" => "an array".to_string(),
        "boolean" | "bool" => "true or false".to_string(),
        "string" | "borrowed string" | "str" | "char" => "a string".to_string(),
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        _ if is_rust_type(word) => "a different kind of value".to_string(),
        _ => expected.to_string(),
    }
}

/// serde's description of what the file had, as the config calls it.
fn found_thing(found: &str) -> String {
    let found = found.trim();
    for (serde, ours) in [
        ("string ", "the string "),
        ("integer ", "the number "),
        ("floating point ", "the number "),
        ("boolean ", ""),
    ] {
        if let Some(value) = found.strip_prefix(serde) {
            return format!("{ours}{}", value.trim_matches('`'));
        }
    }
    match found {
        "sequence" => "an array".to_string(),
        "map" => "a table".to_string(),
        other => other.to_string(),
    }
}

/// Whether `word` looks like a Rust type's name (`KeyConfig`, `Vec<String>`).
fn is_rust_type(word: &str) -> bool {
    word.contains(['<', ':']) || word.chars().next().is_some_and(char::is_uppercase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    #[test]
    fn an_unknown_key_gets_the_closest_known_one() {
        let said =
            in_config_terms("unknown field `lisen`, expected one of `listen`, `workers`, `tls`");
        assert_eq!(said, "unknown key `lisen`; did you mean `listen`?");
    }

    #[test]
    fn an_unknown_key_far_from_all_lists_them() {
        let said = in_config_terms("unknown field `zzz`, expected `path` or `interval`");
        assert_eq!(said, "unknown key `zzz`; valid keys here: path, interval");
    }

    #[test]
    fn rust_type_names_never_reach_the_user() {
        let said = in_config_terms("invalid type: string \"abc\", expected struct KeyConfig");
        assert_eq!(said, "expected a table, found the string \"abc\"");
        let said = in_config_terms("invalid type: integer `-1`, expected usize");
        assert_eq!(
            said,
            "expected a whole number, 0 or more, found the number -1"
        );
        let said = in_config_terms("invalid type: sequence, expected a string");
        assert_eq!(said, "expected a string, found an array");
    }

    #[test]
    fn an_unknown_value_gets_a_suggestion() {
        let said = in_config_terms("unknown variant `contineu`, expected `fail` or `continue`");
        assert_eq!(said, "unknown value `contineu`; did you mean `continue`?");
    }

    #[test]
    fn closest_ignores_names_far_away_and_names_too_short_to_tell() {
        assert_eq!(closest("upstrem", ["upstream", "routes"]), Some("upstream"));
        assert_eq!(closest("xyz", ["upstream", "routes"]), None);
        assert_eq!(closest("a", ["acl", "jwt"]), None);
    }

    #[test]
    fn a_json_position_in_a_plugin_message_is_dropped() {
        let said = in_config_terms("invalid type: string \"x\", expected u32 at line 1 column 9");
        assert_eq!(
            said,
            "expected a whole number, 0 or more, found the string \"x\""
        );
    }

    #[test]
    fn the_same_error_twice_is_reported_once() {
        let source = Source::from_text(std::path::Path::new("t.toml"), "a\nb\n".into());
        let mut problems = Problems::new(&source);
        problems.at(2..3, "second");
        problems.at(0..1, "first");
        problems.at(2..3, "other");
        problems.at(0..1, "first");
        let err = problems
            .finish(())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "t.toml:1:1: first\nt.toml:2:1: other\nt.toml:2:1: second\n3 errors"
        );
        let mut problems = Problems::new(&source);
        problems.at(0..1, "only");
        problems.at(0..1, "only");
        let err = problems
            .finish(())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(err, "t.toml:1:1: only");
    }
}
