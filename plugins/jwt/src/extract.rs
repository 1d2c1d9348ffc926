//! Finding the token in a request (header, then query parameter, then
//! cookie) and removing it again for `hide_credentials`.

use crate::config::Options;
use plugin_sdk::Request;

/// Where the token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `<header>: Bearer <token>`.
    Header,
    /// `?<query>=<token>`.
    Query,
    /// `Cookie: <cookie>=<token>`.
    Cookie,
}

/// The token and where it was, or `None` when no place holds one.
pub fn find(req: &Request, options: &Options) -> Option<(Source, String)> {
    if let Some(token) = req.headers().get(&options.header).and_then(bearer) {
        return Some((Source::Header, token.to_string()));
    }
    if let Some(name) = &options.query
        && !req.query().is_empty()
        && let Some(token) = req.query_param(name).filter(|t| !t.is_empty())
    {
        return Some((Source::Query, token));
    }
    if let Some(name) = &options.cookie
        && let Some(token) = req
            .headers()
            .get_all("cookie")
            .find_map(|header| cookie_value(header, name))
    {
        return Some((Source::Cookie, token.to_string()));
    }
    None
}

/// Removes the token from where it was found.
pub fn hide(req: &mut Request, source: &Source, options: &Options) {
    match source {
        Source::Header => {
            req.headers_mut().remove(&options.header);
        }
        Source::Query => {
            if let Some(name) = &options.query {
                req.remove_query_param(name);
            }
        }
        Source::Cookie => {
            let Some(name) = &options.cookie else { return };
            let kept: Vec<String> = req
                .headers()
                .get_all("cookie")
                .map(|header| {
                    header
                        .split(';')
                        .map(str::trim)
                        .filter(|pair| pair.split_once('=').is_none_or(|(n, _)| n.trim() != name))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|header| !header.is_empty())
                .collect();
            let headers = req.headers_mut();
            headers.remove("cookie");
            for header in kept {
                headers.append("cookie", header);
            }
        }
    }
}

/// The credentials of an RFC 6750 `Bearer` authorization value; the scheme
/// is case-insensitive.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(rest.trim()).filter(|token| !token.is_empty())
}

/// The value of cookie `name` in one `Cookie` header (RFC 6265 5.4), without
/// surrounding quotes.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (n, value) = pair.split_once('=')?;
        if n.trim() != name {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some(value).filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("BEARER\tabc"), Some("abc"));
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn cookies_match_by_exact_name() {
        let header = "a=1; jwt=tok; other_jwt=x; q=\"quoted\"";
        assert_eq!(cookie_value(header, "jwt"), Some("tok"));
        assert_eq!(cookie_value(header, "q"), Some("quoted"));
        assert_eq!(cookie_value(header, "JWT"), None);
        assert_eq!(cookie_value("jwt=", "jwt"), None);
        assert_eq!(cookie_value("jwt", "jwt"), None);
    }
}
