//! Finding the token in a request (the header, the query parameter or the
//! cookie) and removing it again for `hide_credentials`.
//!
//! RFC 6750 2: a client must not send the token by more than one method. A
//! request that does, or that repeats one (two header lines, a comma-joined
//! line, the parameter or the cookie twice), is refused: the upstream might
//! read another copy than the one verified here.

use crate::config::Options;
use plugin_sdk::{Repeated, Request};

/// What one place holds: `None` when absent or empty, `Some(None)` for a
/// header with another scheme than `Bearer`, else `Some(Some(token))`.
type Place = Option<Option<String>>;

/// The token: `Ok(None)` when no place holds one, [`Repeated`] when several
/// places hold something or one is repeated.
pub fn find(req: &Request, options: &Options) -> Result<Option<String>, Repeated> {
    let places = [
        in_header(req, options)?,
        in_query(req, options)?,
        in_cookie(req, options)?,
    ];
    let mut held = places.into_iter().flatten();
    let first = held.next();
    if held.next().is_some() {
        return Err(Repeated);
    }
    Ok(first.flatten())
}

fn in_header(req: &Request, options: &Options) -> Result<Place, Repeated> {
    let Some(value) = req.headers().single(&options.header)? else {
        // Absent, or a value that is not text: something, but no token.
        return Ok(req.headers().contains(&options.header).then_some(None));
    };
    // A bearer token has no comma (RFC 6750 2.1): two lines joined by a proxy.
    if value.contains(',') {
        return Err(Repeated);
    }
    if value.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(bearer(value).map(str::to_string)))
}

fn in_query(req: &Request, options: &Options) -> Result<Place, Repeated> {
    let Some(name) = &options.query else {
        return Ok(None);
    };
    if req.query().is_empty() {
        return Ok(None);
    }
    let token = req.single_query_param(name)?.filter(|t| !t.is_empty());
    Ok(token.map(Some))
}

fn in_cookie(req: &Request, options: &Options) -> Result<Place, Repeated> {
    let Some(name) = &options.cookie else {
        return Ok(None);
    };
    if req.headers().get_all("cookie").count() != req.headers().count("cookie") {
        // A line that is not text may hold the cookie too: unreadable here,
        // read by the upstream.
        return Err(Repeated);
    }
    let mut values = req
        .headers()
        .get_all("cookie")
        .flat_map(|header| cookie_values(header, name));
    let first = values.next();
    if values.next().is_some() {
        return Err(Repeated);
    }
    let token = first.filter(|v| !v.is_empty());
    Ok(token.map(|token| Some(token.to_string())))
}

/// Removes every place the token may be in: where it was, and any empty
/// copy beside it.
pub fn hide(req: &mut Request, options: &Options) {
    req.headers_mut().remove_alike(&options.header);
    if let Some(name) = &options.query
        && !req.query().is_empty()
    {
        req.remove_query_param(name);
    }
    if let Some(name) = &options.cookie {
        hide_cookie(req, name);
    }
}

/// Removes cookie `name` from every `Cookie` header, and headers left empty.
fn hide_cookie(req: &mut Request, name: &str) {
    let has_it = |header: &str| cookie_values(header, name).next().is_some();
    if !req.headers().get_all("cookie").any(has_it) {
        return;
    }
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

/// The credentials of an RFC 6750 `Bearer` authorization value; the scheme
/// is case-insensitive.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(rest.trim()).filter(|token| !token.is_empty())
}

/// Every value of cookie `name` in one `Cookie` header (RFC 6265 5.4),
/// without surrounding quotes; empty ones too.
fn cookie_values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header.split(';').filter_map(move |pair| {
        let (n, value) = pair.split_once('=')?;
        if n.trim() != name {
            return None;
        }
        let value = value.trim();
        Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        )
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
        let values = |header, name| cookie_values(header, name).collect::<Vec<_>>();
        assert_eq!(values(header, "jwt"), ["tok"]);
        assert_eq!(values(header, "q"), ["quoted"]);
        assert!(values(header, "JWT").is_empty());
        assert_eq!(values("jwt=", "jwt"), [""]);
        assert!(values("jwt", "jwt").is_empty());
        assert_eq!(values("jwt=a; x=1; jwt=b", "jwt"), ["a", "b"]);
    }
}
