//! `[server.compression]` and `[routes.compression]`: their shape, each
//! table checked, and a route's [`Compression`]: the route's keys, else the
//! server's, else the defaults. Off unless one of the two tables is given.

use super::problems::{Problems, suggestion};
use super::source::{ConfigError, Source};
use super::units::ByteSize;
use crate::compress::{Algorithm, Compression, DEFAULT_CONTENT_TYPES, DEFAULT_MIN_SIZE, LEVELS};
use serde::Deserialize;
use toml::Spanned;

/// `[server.compression]` or `[routes.compression]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    /// Whether responses are compressed (default: true once a table is given).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Algorithms offered, in order of preference among those the client
    /// accepts equally: `gzip`, `br`, `zstd`.
    #[serde(default)]
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    /// Bodies known to be shorter are sent as they are.
    #[serde(default)]
    pub min_size: Option<ByteSize>,
    /// Media types compressed (`type/subtype` or `type/*`).
    #[serde(default)]
    pub content_types: Option<Spanned<Vec<Spanned<String>>>>,
    /// The level of every algorithm, 1 (fastest) to 9.
    #[serde(default)]
    pub level: Option<Spanned<i64>>,
}

/// One table's keys, checked; `None` where it does not say.
#[derive(Debug, Default)]
struct Checked {
    enabled: Option<bool>,
    algorithms: Option<Vec<Algorithm>>,
    min_size: Option<u64>,
    content_types: Option<Vec<String>>,
    level: Option<i32>,
}

/// Records every error in `[server.compression]` (once, where `[server]`
/// is checked; routes merge it without reporting it again).
pub fn check_server(problems: &mut Problems<'_>, table: Option<&Spanned<CompressionConfig>>) {
    if let Some(table) = table {
        check_table(problems, table.get_ref(), "server.compression");
    }
}

/// The compression of route `name`: its own `[routes.compression]` keys,
/// else `[server.compression]`'s, else the defaults; `None` when neither
/// table is given or `enabled` is false. Reports errors in the route's table.
pub fn route_compression(
    source: &Source,
    server: Option<&Spanned<CompressionConfig>>,
    route: Option<&Spanned<CompressionConfig>>,
    name: &str,
) -> Result<Option<Compression>, ConfigError> {
    if server.is_none() && route.is_none() {
        return Ok(None);
    }
    // The server's errors are reported where `[server]` is checked.
    let mut unreported = Problems::new(source);
    let server = server.map_or_else(Checked::default, |table| {
        check_table(&mut unreported, table.get_ref(), "server.compression")
    });
    let mut problems = Problems::new(source);
    let at = format!("route `{name}`: compression");
    let own = route.map_or_else(Checked::default, |table| {
        check_table(&mut problems, table.get_ref(), &at)
    });
    problems.finish(())?;
    if !own.enabled.or(server.enabled).unwrap_or(true) {
        return Ok(None);
    }
    Ok(Some(Compression {
        algorithms: own
            .algorithms
            .or(server.algorithms)
            .unwrap_or_else(|| Algorithm::ALL.to_vec()),
        min_size: own.min_size.or(server.min_size).unwrap_or(DEFAULT_MIN_SIZE),
        content_types: own
            .content_types
            .or(server.content_types)
            .unwrap_or_else(|| {
                DEFAULT_CONTENT_TYPES
                    .iter()
                    .map(|t| t.to_string())
                    .collect()
            }),
        level: own.level.or(server.level),
    }))
}

/// One table checked, its errors recorded (`at` names it in them).
fn check_table(problems: &mut Problems<'_>, table: &CompressionConfig, at: &str) -> Checked {
    let algorithms = table.algorithms.as_ref().map(|list| {
        if list.get_ref().is_empty() {
            problems.at(
                list.span(),
                format!("{at}.algorithms cannot be empty: list gzip, br or zstd (or set enabled = false)"),
            );
        }
        let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
        let mut algorithms = Vec::new();
        for given in list.get_ref() {
            match Algorithm::from_name(given.get_ref()) {
                Some(algorithm) if !algorithms.contains(&algorithm) => algorithms.push(algorithm),
                Some(_) => {}
                None => problems.at(
                    given.span(),
                    format!(
                        "{at}.algorithms: unknown algorithm `{}`{}",
                        given.get_ref(),
                        suggestion(given.get_ref(), "known algorithms", &names)
                    ),
                ),
            }
        }
        algorithms
    });
    let content_types = table.content_types.as_ref().map(|list| {
        if list.get_ref().is_empty() {
            problems.at(
                list.span(),
                format!("{at}.content_types cannot be empty (set enabled = false to compress nothing)"),
            );
        }
        list.get_ref()
            .iter()
            .filter_map(|given| {
                let media = given.get_ref().trim().to_ascii_lowercase();
                if media_type_fault(&media) {
                    problems.at(
                        given.span(),
                        format!("{at}.content_types: invalid media type `{}`: expected `type/subtype` or `type/*`, such as `application/json`", given.get_ref()),
                    );
                    return None;
                }
                Some(media)
            })
            .collect()
    });
    let level = table.level.as_ref().and_then(|level| {
        if !LEVELS.contains(level.get_ref()) {
            problems.at(
                level.span(),
                format!(
                    "{at}.level must be between {} (fastest) and {} (smallest); leave it out for each algorithm's default",
                    LEVELS.start(),
                    LEVELS.end()
                ),
            );
            return None;
        }
        i32::try_from(*level.get_ref()).ok()
    });
    Checked {
        enabled: table.enabled,
        algorithms,
        min_size: table.min_size.map(|size| size.0),
        content_types,
        level,
    }
}

/// Whether `media` is not `type/subtype` or `type/*` (lowercase, no parameters).
fn media_type_fault(media: &str) -> bool {
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match media.split_once('/') {
        Some((kind, "*")) => !token(kind),
        Some((kind, subtype)) => !token(kind) || !token(subtype),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::media_type_fault;

    #[test]
    fn media_types_are_type_slash_subtype_or_a_wildcard() {
        assert!(!media_type_fault("application/json"));
        assert!(!media_type_fault("text/*"));
        assert!(!media_type_fault("application/vnd.api+json"));
        assert!(media_type_fault("json"));
        assert!(media_type_fault("*/*"));
        assert!(media_type_fault("text/html; charset=utf-8"));
    }
}
