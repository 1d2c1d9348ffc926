//! Invalidation after unsafe requests (RFC 9111 4.4): a successful `POST`,
//! `PUT`, `DELETE`, `PATCH` (any method but GET, HEAD, OPTIONS and TRACE)
//! makes every stored copy of its target URI, and of the same-origin URIs in
//! its `Location` and `Content-Location`, unusable.
//!
//! The copies of one URI are many keys (one per consumer, per value of the
//! key headers, per variant) that the store cannot list, and the store may
//! be Redis, shared by several gateways. So each URI has a *generation*, a
//! small entry under `GEN {target}` holding a number. Entries are stored
//! under their key followed by a line `gen {number}` (nothing when the URI
//! was never invalidated); invalidating writes a new number, and every key
//! stored under the old one stops being looked up. The old entries are not
//! deleted: they live out their lifetime or are evicted.
//!
//! The generation entry lives a day, the longest the store keeps anything;
//! entries are stored for at most a day less ten minutes, so every entry
//! stored under an older generation (even by a request that was under way
//! when the URI was invalidated) is gone before the generation entry expires
//! and the URI is back to "never invalidated". The `gen` line has a space,
//! which no escaped header value in a variant line can hold, so it never
//! reads as a variant.

use crate::key;
use crate::storable::{GENERATION_MARGIN_SECS, LONGEST_STORAGE};
use plugin_sdk::cache::{self, Entry};
use plugin_sdk::{Headers, clock};
use std::time::Duration;

/// Start of the key of a URI's generation entry.
const GENERATION_PREFIX: &str = "GEN ";
/// How long a generation is kept: the longest any entry lives
/// ([`LONGEST_STORAGE`]) plus a margin, which is the store's own cap of a day.
const GENERATION_TTL: Duration =
    Duration::from_secs(LONGEST_STORAGE.as_secs() + GENERATION_MARGIN_SECS);

/// Whether a request with `method` invalidates its URI when it succeeds:
/// every method but the safe ones a cache knows (RFC 9110 9.2.1).
pub fn is_unsafe(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// Whether a response with `status` to an unsafe request invalidates.
pub fn invalidates(status: u16) -> bool {
    (200..400).contains(&status)
}

/// The current generation of the URI `target`, `None` when it was never
/// invalidated (or not within a day).
pub fn generation(target: &str) -> Option<u64> {
    let entry = cache::lookup(&generation_key(target), Duration::ZERO)?;
    std::str::from_utf8(&entry.body).ok()?.parse().ok()
}

/// The key entries of `primary` are stored under in `generation`.
pub fn storage_key(primary: &str, generation: Option<u64>) -> String {
    match generation {
        Some(generation) => format!("{primary}\ngen {generation}"),
        None => primary.to_string(),
    }
}

/// Starts a new generation of the URI `target`: its stored copies are no
/// longer looked up. The number grows with the clock, and always by one at
/// least, so no earlier generation comes back.
pub fn invalidate(target: &str) {
    let now = clock::now_millis();
    let next = generation(target).map_or(now, |current| now.max(current.saturating_add(1)));
    let entry = Entry {
        status: 0,
        headers: Headers::new(),
        body: next.to_string().into_bytes(),
        stored_at_ms: now,
        vary: Vec::new(),
    };
    // Refused only for a key over the store's limit: such a URI is never
    // looked up either.
    let _ = cache::put(&generation_key(target), entry, GENERATION_TTL);
}

fn generation_key(target: &str) -> String {
    format!("{GENERATION_PREFIX}{target}")
}

/// The request an unsafe request's response invalidates around: its host,
/// path and query as the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Host and port, as in the key (compared without case).
    pub authority: String,
    /// The path as received.
    pub path: String,
    /// The query as received.
    pub query: String,
}

impl Origin {
    /// One line per part, for the request context.
    pub fn encode(&self) -> String {
        format!("{}\n{}\n{}", self.authority, self.path, self.query)
    }

    /// Reads what [`Origin::encode`] wrote.
    pub fn decode(text: &str) -> Option<Origin> {
        let mut parts = text.splitn(3, '\n');
        Some(Origin {
            authority: parts.next()?.to_string(),
            path: parts.next()?.to_string(),
            query: parts.next()?.to_string(),
        })
    }

    /// The path and query `reference` (a `Location` or `Content-Location`
    /// value) points to, resolved against this request's URI (RFC 3986 5.2),
    /// when it is on the same host; `None` for another host or scheme.
    pub fn resolve(&self, reference: &str) -> Option<(String, String)> {
        let reference = reference.trim();
        let reference = reference.split_once('#').map_or(reference, |(r, _)| r);
        if reference.is_empty() {
            return None;
        }
        let (path, query) = match split_scheme(reference) {
            Some((scheme, rest)) => {
                let scheme = scheme.to_ascii_lowercase();
                if scheme != "http" && scheme != "https" {
                    return None;
                }
                self.on_this_host(rest.strip_prefix("//")?)?
            }
            None => match reference.strip_prefix("//") {
                Some(rest) => self.on_this_host(rest)?,
                None => self.relative(reference),
            },
        };
        Some((remove_dot_segments(&path), query))
    }

    /// `authority/path?query` when the authority is this request's.
    fn on_this_host(&self, rest: &str) -> Option<(String, String)> {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(end);
        if !authority.eq_ignore_ascii_case(&self.authority) {
            return None;
        }
        let (path, query) = split_query(path_and_query);
        let path = if path.is_empty() { "/" } else { path };
        Some((path.to_string(), query.to_string()))
    }

    /// A reference without scheme or authority, against this request's path.
    fn relative(&self, reference: &str) -> (String, String) {
        let (path, query) = split_query(reference);
        if path.is_empty() {
            return (self.path.clone(), query.to_string());
        }
        if path.starts_with('/') {
            return (path.to_string(), query.to_string());
        }
        let directory = self.path.rfind('/').map_or("/", |i| &self.path[..=i]);
        (format!("{directory}{path}"), query.to_string())
    }

    /// The key target of `reference`, when it is on this host.
    pub fn target_of(&self, reference: &str, options: &crate::config::Options) -> Option<String> {
        let (path, query) = self.resolve(reference)?;
        Some(key::target(&self.authority, &path, &query, options))
    }
}

/// `(scheme, rest)` when `reference` starts with a URI scheme and a colon.
fn split_scheme(reference: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = reference.split_once(':')?;
    let mut bytes = scheme.bytes();
    let starts_with_letter = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let valid = starts_with_letter
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    valid.then_some((scheme, rest))
}

fn split_query(text: &str) -> (&str, &str) {
    text.split_once('?').unwrap_or((text, ""))
}

/// RFC 3986 5.2.4: `.` and `..` segments applied and removed.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." && output.len() > 1 {
                    output.pop();
                }
                // A final dot segment leaves a directory: keep the slash.
                if i == last {
                    output.push("");
                }
            }
            _ => output.push(segment),
        }
    }
    let joined = output.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            authority: "api.example.com".into(),
            path: "/a/b/c".into(),
            query: "q=1".into(),
        }
    }

    fn resolved(reference: &str) -> Option<String> {
        origin().resolve(reference).map(|(path, query)| {
            if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            }
        })
    }

    #[test]
    fn references_resolve_against_the_request_uri() {
        assert_eq!(resolved("d").as_deref(), Some("/a/b/d"));
        assert_eq!(resolved("./d?x=1").as_deref(), Some("/a/b/d?x=1"));
        assert_eq!(resolved("../d").as_deref(), Some("/a/d"));
        assert_eq!(resolved("../../../../d").as_deref(), Some("/d"));
        assert_eq!(resolved("/x/./y/../z").as_deref(), Some("/x/z"));
        assert_eq!(resolved("..").as_deref(), Some("/a/"));
        assert_eq!(resolved("?page=2").as_deref(), Some("/a/b/c?page=2"));
        assert_eq!(resolved("d#frag").as_deref(), Some("/a/b/d"));
        assert_eq!(
            resolved("HTTPS://API.example.com/v1?x").as_deref(),
            Some("/v1?x")
        );
        assert_eq!(resolved("http://api.example.com").as_deref(), Some("/"));
        assert_eq!(resolved("//api.example.com/p").as_deref(), Some("/p"));
    }

    #[test]
    fn other_hosts_and_schemes_are_not_resolved() {
        for reference in [
            "http://other.example/a",
            "//other.example/a",
            "http://api.example.com:8080/a",
            "mailto:someone@api.example.com",
            "ftp://api.example.com/a",
            "",
            "#top",
        ] {
            assert_eq!(resolved(reference), None, "{reference}");
        }
    }

    #[test]
    fn origins_round_trip_through_the_context() {
        assert_eq!(Origin::decode(&origin().encode()), Some(origin()));
        assert_eq!(Origin::decode("only-a-host"), None);
    }

    #[test]
    fn generations_are_a_suffix_line_with_a_space() {
        assert_eq!(storage_key("GET h/p", None), "GET h/p");
        assert_eq!(storage_key("GET h/p", Some(42)), "GET h/p\ngen 42");
        assert!(is_unsafe("POST") && is_unsafe("PATCH") && is_unsafe("BREW"));
        assert!(!is_unsafe("GET") && !is_unsafe("OPTIONS") && !is_unsafe("TRACE"));
    }

    /// The host keeps nothing longer than a day: the generation entry is
    /// kept that long, and every entry (stored under an older generation
    /// too) for at least a few minutes less, so none outlives it.
    #[test]
    fn a_generation_outlives_every_entry_by_a_margin() {
        let host_cap = Duration::from_secs(86_400);
        assert!(GENERATION_TTL <= host_cap);
        assert!(GENERATION_TTL >= LONGEST_STORAGE + Duration::from_secs(5 * 60));
    }

    #[test]
    fn invalidating_moves_the_generation_on() {
        let target = "api.example.com/gen-test";
        assert_eq!(generation(target), None);
        invalidate(target);
        let first = generation(target).unwrap_or_default();
        assert!(first > 0);
        invalidate(target);
        assert!(generation(target).unwrap_or_default() > first);
    }
}
