//! Matching `Content-Type` against the configured media types.

/// `type/subtype`, `type/*+suffix` or `type/*`, lower-case, without parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    kind: String,
    subtype: Subtype,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subtype {
    Exact(String),
    /// `*+xml`: any subtype ending in `+xml`.
    Suffix(String),
    Any,
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

impl MediaRange {
    /// Parses a configured range; parameters (`; charset=...`) are allowed
    /// and ignored. `None` when it is not one.
    pub fn parse(text: &str) -> Option<MediaRange> {
        let (kind, subtype) = essence(text)?;
        let subtype = match subtype.strip_prefix('*') {
            Some("") => Subtype::Any,
            Some(suffix) => match suffix.strip_prefix('+') {
                Some(s) if is_token(s) => Subtype::Suffix(format!("+{s}")),
                _ => return None,
            },
            None if is_token(&subtype) => Subtype::Exact(subtype),
            None => return None,
        };
        is_token(&kind).then_some(MediaRange { kind, subtype })
    }

    /// Whether this range has a wildcard (and so cannot label a body).
    pub fn is_wildcard(&self) -> bool {
        !matches!(self.subtype, Subtype::Exact(_))
    }

    fn matches(&self, kind: &str, subtype: &str) -> bool {
        kind == self.kind
            && match &self.subtype {
                Subtype::Exact(exact) => subtype == exact,
                Subtype::Suffix(suffix) => {
                    subtype.len() > suffix.len() && subtype.ends_with(suffix.as_str())
                }
                Subtype::Any => true,
            }
    }
}

/// `(type, subtype)` of a media type, lower-case.
fn essence(text: &str) -> Option<(String, String)> {
    let essence = text.split(';').next()?.trim();
    let (kind, subtype) = essence.split_once('/')?;
    Some((
        kind.trim().to_ascii_lowercase(),
        subtype.trim().to_ascii_lowercase(),
    ))
}

/// Whether `content_type` (a header value) is in one of `ranges`.
pub fn matches_any(content_type: &str, ranges: &[MediaRange]) -> bool {
    essence(content_type)
        .is_some_and(|(kind, subtype)| ranges.iter().any(|r| r.matches(&kind, &subtype)))
}

/// The `charset` parameter of `content_type`, if any, unquoted.
pub fn charset(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// Whether `encoding` (a charset or an XML declaration's encoding) is UTF-8
/// or ASCII, its subset.
pub fn is_utf8(encoding: &str) -> bool {
    ["utf-8", "utf8", "us-ascii", "ascii"]
        .iter()
        .any(|name| encoding.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> Vec<MediaRange> {
        list.iter()
            .map(|r| MediaRange::parse(r).unwrap_or_else(|| panic!("{r}")))
            .collect()
    }

    #[test]
    fn matching() {
        let xml = ranges(&["application/xml", "text/xml", "application/*+xml"]);
        for yes in [
            "application/xml",
            "Text/XML; charset=utf-8",
            "application/soap+xml; action=x",
            "application/atom+xml",
        ] {
            assert!(matches_any(yes, &xml), "{yes}");
        }
        for no in [
            "application/json",
            "application/+xml",
            "text/html",
            "xml",
            "",
            "application/xml-dtd",
        ] {
            assert!(!matches_any(no, &xml), "{no}");
        }
        let any_text = ranges(&["text/*"]);
        assert!(matches_any("text/plain", &any_text));
        assert!(!matches_any("application/plain", &any_text));
    }

    #[test]
    fn parsing() {
        for bad in [
            "json",
            "application/",
            "/xml",
            "application/*xml",
            "application/*+",
            "a b/c",
            "*/*x",
        ] {
            assert_eq!(MediaRange::parse(bad), None, "{bad}");
        }
        assert!(MediaRange::parse("application/*").is_some_and(|r| r.is_wildcard()));
        assert!(MediaRange::parse("text/xml; charset=utf-8").is_some_and(|r| !r.is_wildcard()));
    }

    #[test]
    fn charsets() {
        assert_eq!(
            charset("text/xml; charset=\"ISO-8859-1\""),
            Some("ISO-8859-1")
        );
        assert_eq!(charset("application/json;Charset=utf-8"), Some("utf-8"));
        assert_eq!(charset("application/json"), None);
        assert!(is_utf8("UTF-8") && is_utf8("us-ascii") && !is_utf8("latin1"));
    }
}
